with

customers as (

    select * from {{ ref('stg_customers') }}

),

final as (

    select
        cast(customer_id as integer) as customer_id,
        cast(first_name || ' ' || last_name as varchar) as full_name,
        cast(email as varchar) as email,
        cast(country as varchar) as country,
        cast(signup_date as date) as signup_date

    from customers

)

select * from final
