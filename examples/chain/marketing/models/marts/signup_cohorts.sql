with

customers as (

    select * from {{ source('core', 'customers') }}

),

final as (

    select
        cast(date_trunc('month', signup_date) as date) as cohort_month,
        count(*) as customers

    from customers

    group by 1

)

select * from final
