with

source as (

    select * from {{ ref('raw_customers') }}

),

renamed as (

    select
        id as customer_id,
        first_name,
        last_name,
        nullif(trim(lower(email)), '') as email,
        upper(country) as country,
        signup_date

    from source

)

select * from renamed
